"""Sensors of the `moodle_integration` code location (all running by default under the daemon).

- `moodle_schedule_course_catalog`, `moodle_schedule_user_directory`,
  `moodle_schedule_enrollments`: read `integration_sync_config` every tick and launch their
  target's job when it is due (see `sensors.schedule`).
- `moodle_run_failure_sensor` / `moodle_run_canceled_sensor`: close the history rows of a
  Dagster run that failed or was canceled (see `sensors.run_status`).
"""
from .run_status import moodle_run_canceled_sensor, moodle_run_failure_sensor
from .schedule import SCHEDULE_SENSORS, evaluate_schedule, schedule_sensor_name

SENSORS = [*SCHEDULE_SENSORS.values(), moodle_run_failure_sensor, moodle_run_canceled_sensor]

__all__ = [
    "SCHEDULE_SENSORS", "SENSORS", "evaluate_schedule", "moodle_run_canceled_sensor",
    "moodle_run_failure_sensor", "schedule_sensor_name",
]
