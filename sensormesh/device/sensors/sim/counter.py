# A sensor that counts: 0, 1, 2, ... For tests (sequence numbers) and benchmarks (cheap reads).
class Counter:
    RATE_HZ = 1000
    UNIT = "sequence number (int)"
    MEASURES = ("count", None)

    def __init__(self, start=0, seed=None):
        self.n = start

    def get(self):
        n = self.n
        self.n = n + 1
        return n

    def get_many(self, k):
        # k readings at once, as k calls of get() give them (a free-running source reads runs)
        n = self.n
        self.n = n + k
        return list(range(n, n + k))
