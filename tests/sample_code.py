"""Functions the tests trace. Line numbers below are asserted on: append, don't insert."""


def add_one(x):
    y = x + 1
    z = y * 2
    return z


def caller(x):
    return add_one(x) + add_one(x + 1)


def fib(n):
    if n < 2:
        return n
    return fib(n - 1) + fib(n - 2)


def boom(message):
    local_before_raise = message.upper()
    raise ValueError(local_before_raise)


def countdown(n):
    while n > 0:
        sent = yield n
        n -= 1 if sent is None else sent
    return "liftoff"


async def fetch(value):
    doubled = value * 2
    return doubled


def make_counter(step):
    total = 0

    def counter():
        nonlocal total
        increment = step
        total += increment
        return total

    return counter


class Greeter:
    def __init__(self, name):
        self.name = name

    def greet(self, punctuation="!"):
        text = "hello " + self.name
        return text + punctuation


def unrelated(x):
    return x


def duplicated_lines(x):
    x = x + 1
    x = x + 1
    return x


def stream_with_cleanup(items, log):
    try:
        for item in items:
            yield item
    finally:
        log.append("closed")
