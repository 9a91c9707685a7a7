"""Jupyter widgets for orquestrador. The only package that imports ipywidgets.

Workers never import it: the facade reaches it lazily, from methods only notebooks call.
"""

from orquestrador.notebook.jobs import job_widget, lote_widget
from orquestrador.notebook.painel import Painel, painel
from orquestrador.notebook.rastreio import Rastreio, rastreio
from orquestrador.notebook.topicos import Topicos, topicos

__all__ = ["Painel", "Rastreio", "Topicos", "job_widget", "lote_widget", "painel", "rastreio", "topicos"]
