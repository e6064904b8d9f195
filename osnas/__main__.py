"""Allow ``python -m osnas`` (also what ``torchrun -m osnas`` uses)."""

from osnas.cli import main

if __name__ == "__main__":
    main()
