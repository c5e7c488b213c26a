"""Sensors of the `moodle_integration` code location (all running by default under the daemon).

- `moodle_schedule_course_catalog`, `moodle_schedule_user_directory`,
  `moodle_schedule_enrollments`: read `integration_sync_config` every tick and launch their
  target's job when it is due (see `sensors.schedule`).
- `moodle_run_failure_sensor` / `moodle_run_canceled_sensor`: close the history rows of a
  Dagster run that failed or was canceled (see `sensors.run_status`).

`build_sensors(tick_seconds=...)` makes them; `moodle_assets.definitions` calls it with the
configured interval. They get the app database as the `app_db` resource.
"""

from dagster import SensorDefinition

from .run_status import build_run_status_sensors
from .schedule import build_schedule_sensors, evaluate_schedule, schedule_sensor_name


def build_sensors(*, tick_seconds: int) -> list[SensorDefinition]:
    return [*build_schedule_sensors(tick_seconds).values(), *build_run_status_sensors(tick_seconds)]


__all__ = [
    "build_run_status_sensors",
    "build_schedule_sensors",
    "build_sensors",
    "evaluate_schedule",
    "schedule_sensor_name",
]
