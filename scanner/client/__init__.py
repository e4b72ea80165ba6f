"""The wire layer: credentials, one aiohttp session, and signed calls to the EAS API."""
