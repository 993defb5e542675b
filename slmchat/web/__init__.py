"""``slmchat web``: the same Textual app in a browser (textual-serve), offline and local."""
