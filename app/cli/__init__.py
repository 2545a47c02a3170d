"""The ``foreman`` command (``main``) and its sub-commands; helpers they share live in
``cli_common``, below all of them."""
