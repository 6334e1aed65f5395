"""Built-in metrics; importing this package registers them all."""
