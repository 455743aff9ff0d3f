"""Where recordings come from and what they are: the generated corpus, LibriTTS (download and
archives), a folder of your own, and the labels table with its speaker-disjoint splits."""
