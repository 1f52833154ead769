"""The delivery platform: one program for every stack; the stack's config says what it manages."""

import pulumi

from components.config import load_stack_config
from components.stack import build

for name, value in build(load_stack_config()).items():
    pulumi.export(name, value)
