"""SentencePiece tokenization: the tokenizer, its tokenizer.json, vocabulary training."""
