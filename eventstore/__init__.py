"""The log: envelope, Avro codec and schema registry, the Log interface and its backends, replay."""
