"""perfdash's own health, recorded as ordinary metrics under the reserved node `perfdash`.

It sits just above the store (`lib`, `metrics`, `live`) and below everything it measures:
ingest, alerts and forecasting record events into it (`measure.py`), so they must be able to
import it. The backlog gauges (`gauges.py`) it reads from their tables by name, in SQL, as an
observer; it imports none of their models.
"""
