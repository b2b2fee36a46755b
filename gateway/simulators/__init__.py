"""Department simulators: honest implementations of each system's contract, with an
effect ledger, for the demo, the tests and anyone integrating without the real system."""
