"""What the book shows: figures, widgets, result tables and the files it quotes."""
