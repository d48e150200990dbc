"""Standard-library-only building blocks: errors, durations, atomic files.

Owns nothing stateful; must not import any other skupper package.
"""
