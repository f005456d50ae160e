"""AVLnet: audio-visual (and audio-video-text) embeddings learnt from
instructional videos (Rouditchenko et al., Interspeech 2021): the models,
the masked-margin-softmax training and the released-weights converter."""
