# pattogis: API and maps. The raw open-data kit is mounted at /data/raw (it is not in the image);
# built layers go to /app/data/layers (mount a volume to keep them).
#   docker build -t pattogis .
#   docker run -p 8000:8000 -v /path/to/shared/data:/data:ro pattogis
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY pattogis ./pattogis
COPY api ./api
RUN pip install --no-cache-dir .
ENV PATTOGIS_RAW=/data/raw
EXPOSE 8000
CMD ["pattogis", "run", "--host", "0.0.0.0", "--port", "8000"]
