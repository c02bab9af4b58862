"""What a scale's results say: tables beside the paper, figures, training curves, the claims with
their statistics, and the cost of every job. Reads result JSON only; loads no model."""
