"""The seed's first example: a task that prints the value it was given."""


def run(params: dict) -> dict:
    print(f"othertask got myvalue={params.get('myvalue')}", flush=True)
    return {"myvalue": params.get("myvalue")}
