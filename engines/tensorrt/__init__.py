"""TensorRT engines: builder (``builder``), pure logic (``core``), static lint (``lint``), parity check
(``verify``). ``tensorrt`` is imported lazily; see docs/TENSORRT.md."""
