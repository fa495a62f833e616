"""Notifications service: assessment schedules, reminders, diary prompts and their dispatch.

The pure rules live in `services.notifications.domain`; message texts in `templates/`.
"""
