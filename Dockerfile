FROM python:3.11-slim
WORKDIR /app
COPY setup.cfg pyproject.toml README.md ./
COPY iras ./iras
RUN pip install --no-cache-dir .
COPY . .
RUN pip install --no-cache-dir --no-deps -e .
ENV PYTHONUNBUFFERED=1
EXPOSE 8080
CMD ["gunicorn", "--workers", "4", "--threads", "4", "--bind", "0.0.0.0:8080", "wsgi:app"]
