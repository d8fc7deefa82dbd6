# The archive's Airflow image: Airflow 3.3.2 on Python 3.11 with the imaging-ingest library,
# its pinned dependencies and the Debian tools the pipeline calls (dciodvfy, dcmtk, tesseract,
# openslide). DAGs, plugins and the library source are also mounted by docker-compose.yaml,
# so a code change needs a restart, not a rebuild.
FROM apache/airflow:3.3.2-python3.11

USER root
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      dicom3tools dcmtk tesseract-ocr libopenslide0 fonts-dejavu-core \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/*

USER airflow
WORKDIR /opt/imaging-ingest
COPY --chown=airflow:root requirements.txt constraints.txt pyproject.toml README.md ./
# Runtime dependencies only (the test tools after "# tests and checks" stay out of the image),
# resolved against the project's own constraints file: the same versions the test suite ran.
# The FAB auth manager (users and roles in the metadata database) ships with the image's providers.
RUN sed '/^# tests and checks/,$d' requirements.txt > /tmp/runtime-requirements.txt \
 && pip install --no-cache-dir "apache-airflow==3.3.2" apache-airflow-providers-fab \
      -r /tmp/runtime-requirements.txt -c constraints.txt
COPY --chown=airflow:root include ./include
COPY --chown=airflow:root deploy/statsd/mapping.yml ./deploy/statsd/mapping.yml
RUN pip install --no-cache-dir --no-deps .

WORKDIR /opt/airflow
