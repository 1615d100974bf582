"""Text to batches: the tokenizer and its stage, the book corpus, task batches with the paper's input transformations."""
