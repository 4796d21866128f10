"""The CSV replay sensor, through a live worker."""
from sensormesh.client import Client
from sensormesh.device.sensors import make


def test_csv_replay_columns_and_loop(tmp_path):
    p = tmp_path / "room.csv"
    p.write_text("temp,hum\n21.5,40\n22,41\n")
    s = make({"kind": "csv", "path": str(p)})
    assert [s.get() for _ in range(3)] == [{"temp": 21.5, "hum": 40}, {"temp": 22, "hum": 41},
                                          {"temp": 21.5, "hum": 40}]
    one = make({"kind": "csv", "path": str(p), "column": "hum", "loop": False})
    assert [one.get() for _ in range(3)] == [40, 41, None]


def test_csv_sensor_served_by_worker(devices, port, tmp_path):
    p = tmp_path / "series.csv"
    p.write_text("\n".join(str(i) for i in range(50)) + "\n")
    devices("cpython", ["--port", str(port), "--sensors", "series=csv:%s@100" % p])
    c = Client("127.0.0.1:%d" % port)
    c.request_data("series", 100)
    got = []
    for m in c.messages():
        got += m
        if len(got) >= 20:
            break
    c.close()
    assert got[:20] == list(range(20))
