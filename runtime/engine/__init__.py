"""The one event loop of runtime-model.txt (loop) and the ports it drives (ports): research and live alike."""
