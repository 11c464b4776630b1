"""Model backends: the interface (base.py), one class a file, and the factory that picks one (factory.py)."""
