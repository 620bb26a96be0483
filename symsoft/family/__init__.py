"""The softmax family as data: each member declared once, read by every later stage."""
