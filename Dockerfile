FROM python:3.11-slim
WORKDIR /app
COPY setup.cfg pyproject.toml README.md constraints.txt ./
COPY iras ./iras
RUN pip install --no-cache-dir -c constraints.txt .
COPY . .
RUN pip install --no-cache-dir --no-deps -e .
ENV PYTHONUNBUFFERED=1
EXPOSE 8080
CMD ["granian", "--interface", "wsgi", "--workers", "2", "--blocking-threads", "16", "--host", "0.0.0.0", "--port", "8080", "--backlog", "4096", "--respawn-failed-workers", "--workers-kill-timeout", "25", "--no-access-log", "wsgi:app"]
