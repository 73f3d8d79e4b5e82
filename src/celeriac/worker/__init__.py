"""Layer 4: the worker node: a master that supervises prefork children."""
