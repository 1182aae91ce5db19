"""eeve_lib: the small library that the chapters of eeve-book call.

Three layers (README, "Architecture"): ``eeve_lib.method`` holds the steps of the EEVE method
(Kim, Choi, Jeong, 2024) as pure functions, with the tokenizer-family seam in
``eeve_lib.method.families``; ``eeve_lib.pipeline`` owns the run folder, caching, profiles and
data; ``eeve_lib.book`` holds what only the chapters and the HTML build need.
"""

__version__ = "0.1.0"
