"""The emotion classifier and the model folders it is saved in."""
