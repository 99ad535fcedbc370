"""Running exports: the parent side (export, validate), spawned workers, and the worker side (build)."""
