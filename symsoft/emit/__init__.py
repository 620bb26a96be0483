"""Emitters: Bundle -> {relative path: text}. They print and render; they never write."""
