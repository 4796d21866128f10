# Shipped to the device that runs the step (see examples/pipelines/two_domains.yaml).


def compare(pair):
    """[inside, outside] -> both rounded and how much warmer it is inside."""
    inside, outside = pair
    return {"inside": round(inside, 1), "outside": round(outside, 1), "warmer": round(inside - outside, 1)}
