"""One module per stage prompt, written to be read as prose.

Each module exposes `SYSTEM` (constant text, sent with an Anthropic
`cache_control` marker so repeated incidents reuse the cached prefix) and a
`build_user(...)` function that renders the stage's input, with every piece of
untrusted text inside a data tag (see `common`).
"""
