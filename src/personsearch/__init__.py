"""personsearch: weakly supervised person search (SSL, DICL, CGPS) and the SeqNet/OIM reference."""

__version__ = "0.1.0"
