"""eeve_lib: the small library that the chapters of eeve-book call.

One module per step of the EEVE method (Kim, Choi, Jeong, 2024); each public function's
docstring names the chapter that shows it.
"""

__version__ = "0.1.0"
