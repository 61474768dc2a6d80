"""Ground truth cotscope did not write: implicit post-hoc rationalization on questions asked
both ways (`iphr`), readers of released labelled CoTs (`readers`), and every per-trace signal
scored as a detector against such labels (`detectors`)."""
