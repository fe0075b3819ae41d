"""`python -m bytezip` runs the command line."""
from .cli import main

main()
