"""Reading recordings and changing them: decoding, resampling and spectra, the speech check,
training augmentation and the robustness conditions' degradations."""
