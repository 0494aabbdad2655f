"""An example Hodei plugin."""
