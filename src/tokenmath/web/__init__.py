"""The interactive blackboard: a Streamlit app over the same core functions the CLI calls."""

from pathlib import Path

APP = Path(__file__).with_name("app.py")
