"""Question 1: SymPy derivations (`derivations`) and Taylor linear attention on tensors (`taylor`)."""
