from setuptools import find_packages, setup

setup(
    name="unde-dagster",
    version="0.1.0",
    description="UNDE fashion catalog pipeline as one Dagster project",
    python_requires=">=3.11",
    packages=find_packages(exclude=["tests", "tests.*", "bench"]),
    package_data={
        "unde_dagster": ["brands.yaml", "migrations/*/*.sql"],
    },
    install_requires=[
        "dagster==1.13.27",
        "dagster-webserver==1.13.27",
        "dagster-graphql==1.13.27",
        "dagster-postgres==0.29.27",
        "dagster-aws==0.29.27",
        "dagster-docker==0.29.27",
        "apify-client==3.4.*",
        "fal-client==1.0.3",
        "psycopg[binary]==3.3.*",
        "Pillow==13.*",
        "cykooz.resizer==4.*",
        "aiohttp==3.14.*",
        "boto3>=1.40",
        "requests>=2.32",
        "PyYAML>=6",
        # SQLAlchemy 2.1 maps postgresql:// to psycopg 3, which breaks dagster-postgres's
        # NOTIFY with a bound parameter; 2.0 keeps psycopg2 (dagster-postgres's own driver).
        "SQLAlchemy>=2.0,<2.1",
    ],
    extras_require={
        "dev": [
            "moto[server]==5.2.*",
            "responses>=0.25",
            "pytest>=8",
            "pytest-timeout>=2.3",
            "playwright==1.65.*",
            "ruff>=0.8",
        ],
    },
)
