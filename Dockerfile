# One image for the worker and the gateways; dependencies come from uv.lock.
# No embedded-redis extra: in production the processes talk to a real Redis.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PATH="/app/.venv/bin:$PATH"
WORKDIR /app
RUN pip install --no-cache-dir uv==0.13.9
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY . .
RUN uv sync --frozen --no-dev
EXPOSE 8000
CMD ["roomcast", "gateway", "--host", "0.0.0.0", "--port", "8000"]
