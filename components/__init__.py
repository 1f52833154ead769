"""Components of the delivery platform, one module each; `config` parses the stack config."""
