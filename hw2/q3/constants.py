"""Question 3's sizes shared by the model, the features, the data and the configuration (a leaf: no torch).
Part of Question 3's code identity: the code computes with them."""

DECODERS = ("rnn", "transformer")
N_FRAMES = 2754  # the skeleton pads every clip's features to this many frames
MAX_ENCODER_LAYERS = 12
SHORT_MAX_FRAMES = 352  # every clip of the short-sentence stand-in has at most this many frames
