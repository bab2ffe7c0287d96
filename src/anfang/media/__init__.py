"""Media node for live video (issue 15): RTP/PS wire layer, test sources, and the relay to the browser."""
