"""The derivation document: its content built and every displayed equality checked from the
Bundle (builder, checks), its prose per language (text), its flat view (view), its maths
printer (printer), and the PDF build (pdf)."""
