"""Model parts: vision tower, decoder, VAD encoder, heads, and SEVLM composing them."""
