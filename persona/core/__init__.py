"""What every layer agrees on: settings (the one configuration path), the raw data contract,
the feature schema, the model catalogue and how dates are read. Imports nothing of Persona."""
